"""The net config section: the cloud id every host object's name carries."""

from __future__ import annotations

from pathlib import Path

import pytest

from soko.common.config import Config, ConfigError, load_config
from soko.net.service import NetConfig, cloud_id


def config(data_dir: str, **values) -> Config:
    return Config(data_dir=Path(data_dir), sections={"net": NetConfig(**values)})


def test_cloud_id_is_stable_per_data_dir_and_configurable():
    assert cloud_id(config("/srv/a")) == cloud_id(config("/srv/a"))
    assert cloud_id(config("/srv/a")) != cloud_id(config("/srv/b"))
    assert len(cloud_id(config("/srv/a"))) == 4
    assert cloud_id(config("/srv/a", cloud_id="beef")) == "beef"


def test_bad_values_name_the_key(tmp_path):
    path = tmp_path / "soko.toml"
    path.write_text('[net]\ncloud_id = "not-hex"\n')
    with pytest.raises(ConfigError, match=r"\[net\] cloud_id"):
        load_config(path, {"net": NetConfig}, environ={})
