"""One end-to-end check on the real FashionMNIST, at a subset size that takes about a minute."""

from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_study

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def real_data_available() -> bool:
    if DEBIAN_DIR.is_dir():
        return True
    import urllib.request

    try:
        urllib.request.urlopen("https://github.com", timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(
    not real_data_available(),
    reason=f"real FashionMNIST unavailable: neither {DEBIAN_DIR} (apt-get install dataset-fashion-mnist) nor the network",
)
def test_quick_sized_study_on_real_data(tmp_path, synthetic_source):
    study = make_study(tmp_path / "real", synthetic_source)
    repo_config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    config = study.config()
    # the real sources and the published checksums pinned in the schema
    config["data"] = {**repo_config["data"], "sha256": schema["properties"]["data"]["properties"]["sha256"]["default"]}
    config["grid"] = {"inits": ["he"], "optimizers": ["adam"], "seeds": [1]}
    config["training"] = {"epochs": 1, "batch_size": 64, "train_size": 6000}
    config["validation"] = {"source": "holdout", "size": 2000, "split_seed": 0}
    study.write_config(base=config, overrides=config)
    study.snakemake("--cores", "2")
    metrics = study.metrics("he_adam_seed1")
    assert metrics["data"] == {"validation_source": "holdout", "train": 6000, "validation": 2000, "test": 10000}
    # one epoch on a tenth of the data already separates FashionMNIST's classes well above chance (0.1)
    assert metrics["test"]["accuracy"] > 0.7
