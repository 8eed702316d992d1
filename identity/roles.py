"""The roles identity knows: names, not rows (a new one needs no migration), in a module
light enough for the CLI to import."""

# admin > member > reader, as Keystone's defaults; ``service`` marks a service's user (its
# token goes in Swift's X-Service-Token) and ``ResellerAdmin`` may act on every object-store
# account (keystoneauth's ``reseller_admin_role``).
ROLES = ("admin", "member", "reader", "service", "ResellerAdmin")
# What each role implies, as Keystone's default implied roles: tokens list them all.
IMPLIED_ROLES = {"admin": ("admin", "member", "reader"), "member": ("member", "reader"),
                 "reader": ("reader",), "service": ("service",),
                 "ResellerAdmin": ("ResellerAdmin",)}
