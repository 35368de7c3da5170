import os, subprocess
def test_dbg(tmp_path):
    r = subprocess.run(['torchrun', '--nproc_per_node', '2', '--standalone', '--no-python', 'fundus2video', 'train', '/tmp/tr2/data',
                        '--out', str(tmp_path/'run'), '--epochs', '1', '--size', '64'], capture_output=True, text=True,
                       timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    print(r.stdout); print('\n'.join(l for l in r.stderr.splitlines() if 'W1201' not in l)[:3000])
    print(sorted(os.environ))
    assert r.returncode == 0
