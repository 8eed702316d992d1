"""Identity and tenancy: projects, users, roles and tokens (a Keystone v3 subset plus Swift tempauth v1), and the token validation every other service uses."""
