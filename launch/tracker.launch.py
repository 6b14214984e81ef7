"""Start tracker_node on an image topic.

    ros2 launch meta_tracker_ros tracker.launch.py image:=/camera/image_raw \
        params_file:=/path/to/tracker_node.yaml backend:=onnxruntime namespace:=robot1
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("meta_tracker_ros"))
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "image", default_value="/camera/image_raw", description="Image topic to track on"
            ),
            DeclareLaunchArgument(
                "camera_info",
                default_value="/camera/camera_info",
                description="CameraInfo topic (for 3D positions)",
            ),
            DeclareLaunchArgument(
                "depth",
                default_value="/camera/depth/image_rect_raw",
                description="Aligned depth image topic (optional)",
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=str(share / "config" / "tracker_node.yaml"),
                description="tracker_node parameters (ROS format)",
            ),
            DeclareLaunchArgument(
                "backend",
                default_value="auto",
                description="Backbone runtime: auto (the shipped default: the fastest installed "
                "runtime whose accuracy was checked for this device, see README, Speed) | torch "
                "| onnxruntime | openvino | tensorrt",
            ),
            DeclareLaunchArgument(
                "namespace", default_value="", description="Namespace of the node"
            ),
            DeclareLaunchArgument(
                "dds_profile",
                default_value=str(share / "config" / "fastdds_large_messages.xml"),
                description="Fast DDS profile for every node started here (large images over "
                "shared memory; see README, Speed). A file of your own replaces it",
            ),
            SetEnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("dds_profile")
            ),
            Node(
                package="meta_tracker_ros",
                executable="tracker_node",
                name="tracker_node",
                namespace=LaunchConfiguration("namespace"),
                output="screen",
                parameters=[
                    LaunchConfiguration("params_file"),
                    {"runtime.backend": LaunchConfiguration("backend")},
                ],
                remappings=[
                    ("image", LaunchConfiguration("image")),
                    ("camera_info", LaunchConfiguration("camera_info")),
                    ("depth", LaunchConfiguration("depth")),
                ],
            ),
        ]
    )
