"""Shared pytest fixtures: where the build, the repository and ../shared are."""
import os

import pytest

ROOT = os.environ.get('TB_ROOT') or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.environ.get('TB_BUILD') or os.path.join(ROOT, 'build', 'release')
SHARED = os.path.join(os.path.dirname(ROOT), 'shared')


@pytest.fixture(scope='session')
def root():
    return ROOT


@pytest.fixture(scope='session')
def build():
    return BUILD


@pytest.fixture(scope='session')
def shared():
    return SHARED


def tool(name):
    """Path of a helper executable built from tests/tools/<name>.c."""
    return os.path.join(BUILD, 'tests', 'tools', name)
