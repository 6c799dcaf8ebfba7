"""Packaging: the wheel carries configs/ and tools/ under mmquerymeld/.mim for mim."""
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tracked_copy(dst: str) -> str:
    """Copy the git-tracked (and untracked, not ignored) files of the repo to ``dst``."""
    out = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    for rel in out.splitlines():
        src = osp.join(REPO, rel)
        if not osp.isfile(src):
            continue
        os.makedirs(osp.dirname(osp.join(dst, rel)), exist_ok=True)
        shutil.copy2(src, osp.join(dst, rel))
    return dst


@pytest.fixture(scope='module')
def built_wheel(tmp_path_factory) -> str:
    src = _tracked_copy(str(tmp_path_factory.mktemp('src')))
    dist = str(tmp_path_factory.mktemp('dist'))
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '-q', '-w', dist, src], check=True, capture_output=True, text=True)
    wheels = [f for f in os.listdir(dist) if f.endswith('.whl')]
    assert len(wheels) == 1, wheels
    return osp.join(dist, wheels[0])


def test_wheel_contains_mim_configs_and_tools(built_wheel):
    names = set(zipfile.ZipFile(built_wheel).namelist())
    for rel in ('mmquerymeld/__init__.py', 'mmquerymeld/.mim/tools/train.py',
                'mmquerymeld/.mim/tools/test.py', 'mmquerymeld/.mim/tools/dist_train.sh',
                'mmquerymeld/.mim/configs/_base_/default_runtime.py',
                'mmquerymeld/.mim/model-index.yml'):
        assert rel in names, f'{rel} missing from {osp.basename(built_wheel)}'
    # every config of the repo is shipped
    for root, _, files in os.walk(osp.join(REPO, 'configs')):
        for f in files:
            if f.endswith('.py'):
                rel = osp.relpath(osp.join(root, f), REPO)
                assert f'mmquerymeld/.mim/{rel}' in names, rel
    assert not any(n.startswith('tests/') for n in names)


def test_wheel_installs_into_fresh_venv_and_mim_runs(built_wheel, tmp_path, tiny_coco_root):
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
    py = venv / 'bin' / 'python'
    # no dependencies: they are the heavy OpenMMLab stack that tools/setup_env.sh installs and
    # verifies; the point here is the installed layout of the package itself
    # no PYTHONPATH: a source checkout on it would make pip think the package is installed
    clean_env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    subprocess.run([str(py), '-m', 'pip', 'install', '--no-deps', '--no-index', '-q',
                    built_wheel], check=True, env=clean_env)
    site = subprocess.run([str(py), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          check=True, capture_output=True, text=True).stdout.strip()
    mim_dir = osp.join(site, 'mmquerymeld', '.mim')
    assert osp.isfile(osp.join(mim_dir, 'configs', '_base_', 'default_runtime.py'))
    assert osp.isfile(osp.join(mim_dir, 'tools', 'train.py'))
    assert not osp.islink(osp.join(mim_dir, 'configs')), 'a wheel must hold copies, not links'

    # `mim train` / `mim test` find tools/ and configs/ in the installed copy. The heavy
    # dependencies come from this test environment through a .pth file, after the fresh
    # site-packages, so mmquerymeld itself is the freshly installed one.
    parent_site = [p for p in sys.path if p.endswith('site-packages')][0]
    with open(osp.join(site, 'zz_parent_env.pth'), 'w') as f:
        f.write(parent_site + '\n')
    where = subprocess.run([str(py), '-c', 'import mmquerymeld; print(mmquerymeld.__file__)'],
                           cwd=str(tmp_path), check=True, capture_output=True,
                           text=True).stdout.strip()
    assert where.startswith(site), where
    cfg = osp.join(REPO, 'tests', 'data', 'configs', 'tiny_retinanet_coco.py')
    work_dir = str(tmp_path / 'mim_work')
    mim = [str(py), '-c', 'import sys; from mim.cli import cli; sys.exit(cli())']
    env = dict(os.environ, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=osp.join(REPO, 'tests', 'data'))
    data = f'{tiny_coco_root}/'
    train = subprocess.run(
        mim + ['train', 'mmquerymeld', cfg, '--work-dir', work_dir, '--cfg-options',
               f'train_dataloader.dataset.data_root={data}', 'train_cfg.max_iters=2',
               'default_hooks.checkpoint.interval=2'],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    ckpt = osp.join(work_dir, 'iter_2.pth')
    assert osp.isfile(ckpt)
    test = subprocess.run(
        mim + ['test', 'mmquerymeld', cfg, '--checkpoint', ckpt, '--work-dir', work_dir,
               '--cfg-options', f'test_dataloader.dataset.data_root={data}',
               f'test_evaluator.ann_file={data}annotations.json', 'model.test_cfg.score_thr=0.0'],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    assert 'coco/bbox_mAP' in test.stdout + test.stderr


def test_editable_install_exposes_mim_dir():
    import mmquerymeld
    mim_dir = osp.join(osp.dirname(mmquerymeld.__file__), '.mim')
    assert osp.isfile(osp.join(mim_dir, 'tools', 'train.py'))
    assert osp.isdir(osp.join(mim_dir, 'configs', '_base_'))
