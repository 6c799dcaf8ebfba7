"""Installation of mmquerymeld.

Besides the Python package, configs/, tools/ and model-index.yml are placed under
``mmquerymeld/.mim`` so that ``mim train mmquerymeld <config>`` / ``mim test`` find them in an
installed copy: they are copied for sdist / wheel / regular builds and symlinked for editable
installs (modern pip runs ``editable_wheel``, old setuptools runs ``develop``).
"""
import os
import os.path as osp
import shutil
import sys
from typing import List

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
MIM_ITEMS = ('configs', 'tools', 'model-index.yml')


def read_version() -> str:
    """Read ``__version__`` from mmquerymeld/version.py without importing the package."""
    scope: dict = {}
    with open(osp.join(HERE, 'mmquerymeld', 'version.py'), encoding='utf-8') as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


def parse_requirements(fname: str) -> List[str]:
    """Read a requirements file, following ``-r`` includes and skipping comments."""
    reqs: List[str] = []
    path = osp.join(HERE, fname)
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            if line.startswith('-r '):
                reqs += parse_requirements(
                    osp.join(osp.dirname(fname), line[3:].strip()))
            else:
                reqs.append(line)
    return reqs


def add_mim_extension() -> None:
    """Place configs/tools/model-index.yml under mmquerymeld/.mim for mim."""
    argv = set(sys.argv)
    if argv & {'develop', 'editable_wheel'}:
        mode = 'symlink'
    elif argv & {'sdist', 'bdist_wheel', 'build', 'build_py', 'install'}:
        mode = 'copy'
    else:
        return
    mim_root = osp.join(HERE, 'mmquerymeld', '.mim')
    os.makedirs(mim_root, exist_ok=True)
    for item in MIM_ITEMS:
        src = osp.join(HERE, item)
        dst = osp.join(mim_root, item)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_root), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
        long_description = f.read()
    setup(
        name='mmquerymeld',
        version=read_version(),
        description='QueryMeldNet: open-vocabulary segmentation across data and tasks, '
        'as an OpenMMLab plugin',
        long_description=long_description,
        long_description_content_type='text/markdown',
        license='Apache License 2.0',
        python_requires='>=3.8',
        packages=find_packages(exclude=('configs', 'tools', 'tests', 'tests.*')),
        include_package_data=True,
        package_data={'mmquerymeld': ['.mim/**/*', '.mim/*']},
        install_requires=parse_requirements('requirements/runtime.txt'),
        extras_require={
            'all': parse_requirements('requirements.txt'),
            'tests': parse_requirements('requirements/tests.txt'),
            'optional': parse_requirements('requirements/optional.txt'),
            'mim': parse_requirements('requirements/mminstall.txt'),
            'annotation': parse_requirements('requirements/annotation.txt'),
        },
        zip_safe=False,
    )
