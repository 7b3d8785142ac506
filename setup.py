"""Install noksr_ros as an ament_python package (colcon) or a plain wheel (pip install .)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'noksr_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, PACKAGE + '.*']),
    package_data={PACKAGE: ['py.typed', 'checkpoints/*.pt', 'checkpoints/*.md']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml')),
        ('share/' + PACKAGE + '/msg', glob('msg/*.msg')),
        ('share/' + PACKAGE + '/rviz', glob('rviz/*.rviz')),
        # launch_ros looks for executables in lib/<package>; pip puts console scripts in bin/.
        ('lib/' + PACKAGE, glob('scripts/lib/*')),
    ],
    install_requires=['setuptools', 'numpy', 'scipy', 'pyyaml', 'typer', 'rich', 'tqdm'],
    zip_safe=False,
    maintainer='noksr_ros developers',
    maintainer_email='noksr-ros@example.org',
    description='Incremental NoKSR surface reconstruction from LiDAR as a ROS 2 package.',
    license='Apache-2.0',
    extras_require={'test': ['pytest', 'hypothesis']},
    python_requires='>=3.10',
    entry_points={
        'console_scripts': [
            'noksr = noksr_ros.cli.main:main',
        ],
    },
)
