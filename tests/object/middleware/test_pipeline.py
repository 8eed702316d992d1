"""The middleware pipeline as the config names it: Swift's sample defaults, and a name no
middleware has refused at start with the key named."""

from __future__ import annotations

import pytest

from soko.common import services
from soko.common.config import ConfigError, dump_toml
from soko.object.middleware import pipeline


def proxy_section(tmp_path, **proxy):
    path = tmp_path / "soko.toml"
    path.write_text(dump_toml({"proxy": proxy}))
    return services.load(path, tmp_path).section("proxy")


def test_default_pipeline_is_swifts_sample_with_its_info(tmp_path):
    section = proxy_section(tmp_path)
    assert section.pipeline == ["bulk", "tempurl", "ratelimit", "crossdomain", "formpost",
                                "staticweb", "container_quotas", "account_quotas", "slo",
                                "dlo", "versioned_writes", "symlink"]
    info = pipeline.swift_info(section.pipeline, section)
    assert info["slo"] == {"max_manifest_segments": 1000, "max_manifest_size": 8 << 20,
                           "min_segment_size": 1, "yield_frequency": 10}
    assert "dlo" in info
    assert info["symlink"] == {"symloop_max": 2, "static_links": True}
    assert info["versioned_writes"] == {"allowed_flags": ["x-versions-location",
                                                         "x-history-location"]}
    assert info["object_versioning"] == {}


def test_an_unknown_middleware_is_refused_naming_the_key(tmp_path):
    section = proxy_section(tmp_path, pipeline=["slo", "tempurl-typo"])
    with pytest.raises(ConfigError, match=r"\[proxy\] pipeline: unknown middleware "
                                          r"'tempurl-typo'"):
        pipeline.swift_info(section.pipeline, section)
    assert pipeline.swift_info([], section) == {}
