"""USB camera (v4l2_camera) + tracker_node + rviz2 showing the debug image.

    ros2 launch meta_tracker_ros camera_tracker.launch.py video_device:=/dev/video0
Then draw a target: ros2 run meta_tracker_ros select_target   (or --box x y w h)
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("meta_tracker_ros"))
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "video_device",
                default_value="/dev/video0",
                description="V4L2 device of the USB camera",
            ),
            DeclareLaunchArgument(
                "image_size",
                default_value="[640, 480]",
                description="Camera resolution [width, height]",
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=str(share / "config" / "tracker_node.yaml"),
                description="tracker_node parameters (ROS format)",
            ),
            DeclareLaunchArgument(
                "rviz", default_value="true", description="Start rviz2 with config/tracker.rviz"
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
                package="v4l2_camera",
                executable="v4l2_camera_node",
                name="camera",
                namespace="camera",
                parameters=[
                    {
                        "video_device": LaunchConfiguration("video_device"),
                        "image_size": LaunchConfiguration("image_size"),
                        "output_encoding": "rgb8",
                    }
                ],
            ),
            Node(
                package="meta_tracker_ros",
                executable="tracker_node",
                name="tracker_node",
                output="screen",
                parameters=[LaunchConfiguration("params_file")],
                remappings=[("image", "/camera/image_raw"), ("camera_info", "/camera/camera_info")],
            ),
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                arguments=["-d", str(share / "config" / "tracker.rviz")],
                condition=IfCondition(LaunchConfiguration("rviz")),
            ),
        ]
    )
