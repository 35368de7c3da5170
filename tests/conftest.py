"""Shared pytest options: `--run-slow` and `--run-cuda` enable the notebook cells and tests flagged so."""
import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    parser.addoption('--run-slow', action='store_true', help='also run cells and tests flagged slow (minutes)')
    parser.addoption('--run-cuda', action='store_true', help='also run cells and tests flagged cuda (needs a GPU; '
                     'on by itself when torch sees one)')


def enabled_flags(config) -> set:
    "The nbdev test flags to run: slow with --run-slow; cuda with --run-cuda or when a GPU is visible."
    flags = set()
    if config.getoption('--run-slow'): flags.add('slow')
    if config.getoption('--run-cuda'): flags.add('cuda')
    else:
        import torch
        if torch.cuda.is_available(): flags.add('cuda')
    return flags


def pytest_collection_modifyitems(config, items):
    on = enabled_flags(config)
    for item in items:
        for flag in ('slow', 'cuda'):
            if flag in item.keywords and flag not in on:
                item.add_marker(pytest.mark.skip(reason=f'flagged {flag}: run with --run-{flag}'))


@pytest.fixture(scope='session')
def nb_flags(request): return enabled_flags(request.config)


def need(ok, what:str):
    "Skip a test whose tool is missing, saying why; under CI (CI=true) fail instead, so CI cannot pass by skipping."
    if ok: return
    if os.environ.get('CI', '').lower() in ('1', 'true', 'yes'): pytest.fail(f'{what}: CI must run this test', pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope='session')
def require():
    "`require(ok, what)`: skip locally (fail in CI) when a tool the test needs is missing."
    return need


@pytest.fixture
def cli():
    "Run the installed `fundus2video` command; returns the CompletedProcess (text mode)."
    def run(*args, check=True):
        r = subprocess.run(['fundus2video', *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=600)
        if check and r.returncode != 0:
            raise AssertionError(f'fundus2video {" ".join(map(str, args))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}')
        return r
    return run
