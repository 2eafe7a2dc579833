"""Registries of the interruption and concurrency tests, apart from the session's ``champion_settings``."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.pipelines.jobs import Store, beltcast, run_to_completion


@dataclass(frozen=True)
class Template:
    """A store where the 60-tree model is champion and the 61-tree model challenger, and the wall
    times of its first ``promote`` and of the ``train`` that registered the challenger."""

    store: Store
    promote_s: float
    train_s: float


@pytest.fixture(scope="session")
def registry_template(built_settings, tmp_path_factory) -> Template:
    """Built once, through the command line as in production; tests change copies of it only."""
    store = Store(tmp_path_factory.mktemp("registry_template"), built_settings)
    run_to_completion(beltcast("train", store.config(trees=60)))
    promote_s = run_to_completion(beltcast("promote", store.config(trees=60)))
    train_s = run_to_completion(beltcast("train", store.config(trees=61)))
    return Template(store, promote_s, train_s)


@pytest.fixture
def own_store(registry_template, tmp_path) -> Store:
    """A copy of the template store that this test alone changes."""
    return registry_template.store.copy_to(tmp_path / "store")


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture
def without_proxy(monkeypatch) -> None:
    """No HTTP proxy for this test: its servers are on loopback, whatever the machine's proxy."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
