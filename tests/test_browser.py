"""JupyterLab in a real browser: what a student sees.

Starts a real JupyterLab server on 127.0.0.1 (a free port, a random token, `--no-browser`, its own config,
runtime and settings folders, temporary copies of the notebooks), opens it in headless Chromium (Debian's
`chromium`, driven by Playwright for Python through its executable path: Playwright's own browser download
cannot work offline) and checks, as a student would see them:

- the tour (`nbs/index.ipynb`) opens and renders its saved pictures; stepping through it with Shift+Enter,
  as a lab does when it skips the minutes-long training cell (and the scoring cells, for time), runs with no
  error output, and its widget player appears;
- the player chapter (`nbs/11_viz.ipynb`) runs top to bottom (Run > Run All Cells) with no error output, its
  widget player is drawn, dragging the player's slider changes the frame shown (label, image source and
  pixels), and ticking the knowledge-mask box tints the picture.

Screenshots go to tests/artifacts/browser/ (git-ignored); their paths are printed (`pytest -s` shows them).
Without Chromium or Playwright the test is skipped locally with the reason, and fails under CI (CI=true).
"""
import json, os, re, secrets, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ART = ROOT/'tests'/'artifacts'/'browser'
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage']
SETTINGS = {  # JupyterLab user settings for the test server: every cell in the DOM, no calls to the internet
    '@jupyterlab/notebook-extension/tracker': {'windowingMode': 'none'},
    '@jupyterlab/apputils-extension/notification': {'fetchNews': 'false', 'checkForUpdates': False},
}
ERRORS = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], .jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture(scope='module')
def lab(tmp_path_factory, require):
    "A JupyterLab server on a copy of the tour and the viz chapter: (base url, token, server log path)."
    require(CHROMIUM, 'Chromium is not installed (apt-get install -y chromium chromium-driver)')
    try: import playwright.sync_api  # noqa: F401
    except ImportError: require(False, 'Playwright for Python is not installed (pip install -e ".[dev]")')
    tmp = tmp_path_factory.mktemp('jupyterlab')
    (tmp/'nbs').mkdir()
    for nb in ('index.ipynb', '11_viz.ipynb'): shutil.copyfile(ROOT/'nbs'/nb, tmp/'nbs'/nb)
    for plugin, values in SETTINGS.items():
        f = tmp/'settings'/f'{plugin}.jupyterlab-settings'; f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(tmp/'config'), 'JUPYTER_RUNTIME_DIR': str(tmp/'runtime'),
           'JUPYTERLAB_SETTINGS_DIR': str(tmp/'settings'), 'JUPYTERLAB_WORKSPACES_DIR': str(tmp/'workspaces'),
           'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep)}
    env.pop('MPLBACKEND', None)                        # the kernel draws inline, as in a student's JupyterLab
    port, token = _free_port(), secrets.token_hex(16)
    log = open(tmp/'server.log', 'w')
    cmd = [sys.executable, '-m', 'jupyter', 'lab', '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}',
           '--ServerApp.port_retries=0', '--ServerApp.allow_root=True', f'--IdentityProvider.token={token}',   # CI runs as root
           f'--ServerApp.root_dir={tmp}', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    base = f'http://127.0.0.1:{port}'
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f'{base}/api/status?token={token}', timeout=2); break
            except OSError:
                if server.poll() is not None: break
                time.sleep(0.5)
        else: pytest.fail('JupyterLab did not answer in 60 s')
        if server.poll() is not None: pytest.fail(f'JupyterLab exited ({server.returncode}):\n{(tmp/"server.log").read_text()[-3000:]}')
        yield base, token, tmp/'server.log'
    finally:
        server.terminate()
        try: server.wait(20)
        except subprocess.TimeoutExpired: server.kill()
        log.close()


@pytest.fixture(scope='module')
def browser(lab, tmp_path_factory):
    "One headless Chromium page (a fresh profile) logged in to the server."
    from playwright.sync_api import sync_playwright
    base, token, _ = lab
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path_factory.mktemp('chromium-profile')), executable_path=CHROMIUM,
                                                   headless=True, args=FLAGS, viewport={'width': 1400, 'height': 1000})
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.failed = []                                  # requests that failed: local ones would be a broken page
        page.on('requestfailed', lambda r: page.failed.append(f'{r.url[:120]} ({r.failure})'))
        page.set_default_timeout(60_000)
        page.goto(f'{base}/lab?token={token}')
        page.wait_for_selector('#jp-main-dock-panel', timeout=120_000)
        yield page
        ctx.close()


def shot(page_or_element, name:str) -> Path:
    "Save a screenshot under tests/artifacts/browser/ and print its path."
    ART.mkdir(parents=True, exist_ok=True)
    path = ART/f'{name}.png'
    page_or_element.screenshot(path=str(path))
    print(f'screenshot: {path}')
    return path


def kernel_state(lab, path:str):
    "The execution state of the kernel of the session on `path` ('idle', 'busy', ...), from the server; None if none."
    base, token, _ = lab
    with urllib.request.urlopen(f'{base}/api/sessions?token={token}', timeout=10) as r:
        states = [s['kernel']['execution_state'] for s in json.load(r) if s['path'] == path and s.get('kernel')]
    return states[0] if states else None


def open_notebook(page, lab, name:str):
    "Open nbs/NAME in JupyterLab and wait until its kernel has started and is idle."
    base, token, _ = lab
    page.goto(f'{base}/lab/tree/nbs/{name}')
    page.wait_for_selector('.jp-NotebookPanel .jp-Notebook .jp-Cell', timeout=120_000)
    t0 = time.time()
    while kernel_state(lab, f'nbs/{name}') != 'idle':
        if time.time() - t0 > 120: pytest.fail(f'the kernel of {name} did not start in 120 s')
        time.sleep(0.5)
    page.wait_for_selector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status="idle"]')


def wait_done(page, indices, timeout_s:float):
    "Wait until the code cells among `indices` have run (a number in their prompt), or an error shows; none queued."
    page.wait_for_function("""([idx, errors]) => {
        const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
        const cells = [...nb.querySelectorAll(':scope .jp-Cell')];
        const prompts = idx.map(i => cells[i]).filter(c => c.classList.contains('jp-CodeCell')).map(c => c.querySelector('.jp-InputPrompt').textContent);
        const queued = [...nb.querySelectorAll('.jp-InputPrompt')].some(e => e.textContent.includes('*'));
        return !queued && (prompts.every(t => /\\[\\d+\\]/.test(t)) || nb.querySelector(errors) !== null); }""",
        arg=[list(indices), ERRORS], timeout=timeout_s * 1000, polling=500)


def error_outputs(page) -> list:
    "Texts of the error and stderr outputs on the visible notebook."
    return page.eval_on_selector_all(f'.jp-NotebookPanel:not(.lm-mod-hidden) :is({ERRORS})', 'els => els.map(e => e.innerText.slice(0, 400))')


def cell(page, i:int):
    return page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell').nth(i)


def run_cells(page, indices):
    "Select each cell in turn (command mode) and press Shift+Enter, as a student stepping through would."
    for i in indices:
        c = cell(page, i)
        c.scroll_into_view_if_needed()
        c.locator('.jp-InputPrompt').first.click()
        page.keyboard.press('Escape')
        page.keyboard.press('Shift+Enter')


def pixels(path:Path) -> np.ndarray:
    import cv2
    return cv2.imread(str(path))


def code_cells(nb:Path) -> dict:
    "index in the notebook -> source, for its code cells."
    cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
    return {i: ''.join(c['source']) for i, c in enumerate(cells) if c['cell_type'] == 'code'}


def player(page):
    "The widget player on the visible notebook: the last VBox holding a slider and an image."
    p = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .widget-vbox').filter(has=page.locator('.widget-hslider')).filter(has=page.locator('img.widget-image'))
    assert p.count() >= 1, 'no widget player was drawn'
    return p.last


def test_tour_opens_renders_and_runs(lab, browser):
    "The tour: its saved pictures render; every cell but the minutes-long training runs with no error; the player shows."
    page, t0 = browser, time.time()
    open_notebook(page, lab, 'index.ipynb')
    title = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-RenderedMarkdown h1').first.inner_text()
    assert 'fundus2video' in title, title
    saved = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output img').count()
    assert saved >= 4, f'only {saved} saved pictures rendered'
    shot(page, 'tour_1_opened')
    cells = code_cells(ROOT/'nbs'/'index.ipynb')
    run = [i for i, src in cells.items() if not re.match(r'\s*#\|\s*(slow|cuda)', src)]
    assert len(run) < len(cells), 'expected the tour to flag its training cell slow'
    run_cells(page, run)
    wait_done(page, run, 240)
    errors = error_outputs(page)
    assert not errors, 'the tour shows error output:\n' + '\n---\n'.join(errors)
    skipped = [i for i in cells if i not in run]
    prompts = [cell(page, i).locator('.jp-InputPrompt').first.inner_text() for i in run]
    assert all(re.search(r'\[\d+\]', p) for p in prompts), prompts
    p = player(page)
    p.scroll_into_view_if_needed()
    assert 'late' in p.locator('.widget-hbox > div.widget-label').inner_text()
    assert p.locator('img.widget-image').evaluate('i => i.complete && i.naturalWidth > 0')
    shot(page, 'tour_2_player')
    cell(page, run[5]).scroll_into_view_if_needed(); shot(page, 'tour_3_knowledge_mask')
    print(f'tour: {len(run)} code cells run, {len(skipped)} skipped (slow), {time.time() - t0:.0f} s')


def test_player_chapter_runs_and_the_slider_moves_the_frame(lab, browser):
    "11_viz in JupyterLab: Run All with no error; the player draws; dragging its slider, Play and the mask box change the picture."
    page, t0 = browser, time.time()
    open_notebook(page, lab, '11_viz.ipynb')
    page.click('.lm-MenuBar-itemLabel:text-is("Run")')
    page.click('.lm-Menu-itemLabel:text-is("Run All Cells")')
    n = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell').count()
    wait_done(page, range(n), 240)
    errors = error_outputs(page)
    assert not errors, '11_viz shows error output:\n' + '\n---\n'.join(errors)
    p = player(page)
    p.scroll_into_view_if_needed()
    label, img = p.locator('.widget-hbox > div.widget-label'), p.locator('img.widget-image')
    text0, src0 = label.inner_text(), img.get_attribute('src')
    assert text0.startswith('frame 1/12'), text0
    png0 = pixels(shot(p, 'viz_1_player_frame1'))

    handle, track = p.locator('.noUi-handle'), p.locator('.noUi-base').bounding_box()
    hb = handle.bounding_box()
    page.mouse.move(hb['x'] + hb['width'] / 2, hb['y'] + hb['height'] / 2)
    page.mouse.down()
    page.mouse.move(track['x'] + 0.75 * track['width'], hb['y'] + hb['height'] / 2, steps=8)
    page.mouse.up()
    # a drag sends several values: wait for the label of the handle's final one (an earlier one may arrive first on a busy machine)
    page.wait_for_function('([l, h]) => +h.getAttribute("aria-valuenow") > 0 && l.innerText.startsWith(`frame ${Math.round(+h.getAttribute("aria-valuenow")) + 1}/`)',
                           arg=[label.element_handle(), handle.element_handle()])
    page.wait_for_function('([i, s]) => i.getAttribute("src") !== s && i.complete', arg=[img.element_handle(), src0])
    text1, value = label.inner_text(), int(float(handle.get_attribute('aria-valuenow')))
    assert value > 0 and text1.startswith(f'frame {value + 1}/12'), (value, text1)
    png1 = pixels(shot(p, 'viz_2_player_slider_moved'))
    assert png1.shape == png0.shape and np.abs(png1.astype(int) - png0).mean() > 2, 'the frame shown did not change'

    src1 = img.get_attribute('src')
    p.locator('.widget-checkbox input').check()
    page.wait_for_function('([i, s]) => i.getAttribute("src") !== s && i.complete', arg=[img.element_handle(), src1])
    png2 = pixels(shot(p, 'viz_3_player_knowledge_mask'))
    cyan = lambda a: (a[..., :2].astype(int).mean(-1) - a[..., 2]).clip(0).mean()   # BGR: blue and green above red
    assert cyan(png2) > cyan(png1) + 1, 'ticking the knowledge mask did not tint the picture'

    play = p.locator('.widget-play button').first                                       # Play: the browser moves the slider
    play.click()
    page.wait_for_function('([l, t]) => l.innerText !== t', arg=[label.element_handle(), label.inner_text()], timeout=10_000)
    play.click()                                                                        # pause, and let the picture catch up
    page.wait_for_function('([l, h]) => l.innerText.startsWith(`frame ${Math.round(+h.getAttribute("aria-valuenow")) + 1}/`)',
                           arg=[label.element_handle(), handle.element_handle()], timeout=10_000)
    shot(page, 'viz_4_page')
    print(f'11_viz: ran all {n} cells, player checked in {time.time() - t0:.0f} s')


def test_jupyterlab_loaded_its_own_resources(lab, browser):
    """No request to the local server failed while the notebooks were used. Calls to the internet may fail (it is
    offline): matplotlib's jshtml animation links Font Awesome from a CDN, whose icons JupyterLab carries anyway."""
    base = lab[0]
    print('failed requests:', browser.failed or 'none')
    local = [f for f in browser.failed if f.startswith(base) and 'ERR_ABORTED' not in f]   # aborted: left behind by a page change
    assert not local, f'JupyterLab could not load its own resources: {local}'


def test_a_missing_browser_skips_locally_and_fails_in_ci(monkeypatch):
    "The rule the browser and exercise tests follow when a tool is missing: skip with the reason, but fail under CI."
    from conftest import need
    monkeypatch.setenv('CI', 'true')
    with pytest.raises(pytest.fail.Exception, match='CI must run this test'): need(None, 'Chromium is not installed')
    monkeypatch.delenv('CI')
    with pytest.raises(pytest.skip.Exception, match='Chromium is not installed'): need(None, 'Chromium is not installed')
    need('/usr/bin/chromium', 'unused')                    # present: nothing happens
