import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds the shared server helper
import labelstudio_server as lss  # noqa: E402


@pytest.fixture(scope="session")
def ls_server(tmp_path_factory):
    """One real Label Studio per test session (shared with the other test folder)."""
    srv = lss.session_server(tmp_path_factory)
    yield srv
    lss.stop_session_server()
