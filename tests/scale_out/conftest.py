"""A local Ray runtime with 2 CPUs for the scale-out tests (started once, torn down after)."""

import logging

import pytest

from rag_vqa.loading import load_retriever

ray = pytest.importorskip("ray")


@pytest.fixture(scope="package")
def ray_runtime():
    """Ray on this machine only: 2 CPUs, servers on 127.0.0.1, no dashboard."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
             _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="package")
def tiny():
    return load_retriever("tiny")
