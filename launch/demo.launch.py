"""image_source (synthetic clip, a video or a folder) + tracker_node + rviz2.

    ros2 launch meta_tracker_ros demo.launch.py input:=synthetic
    ros2 run meta_tracker_ros select_target --box 80 152 70 70
(`make demo` runs the same graph without `ros2 launch`, which PyPI-only setups lack.)
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
                "input",
                default_value="synthetic",
                description="synthetic | video file | image folder | /dev/videoN",
            ),
            DeclareLaunchArgument(
                "rate", default_value="30.0", description="Publishing rate of the image source (Hz)"
            ),
            DeclareLaunchArgument(
                "loop", default_value="true", description="Restart the input when it ends"
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
                package="meta_tracker_ros",
                executable="image_source",
                name="image_source",
                parameters=[
                    {
                        "input": LaunchConfiguration("input"),
                        "rate": LaunchConfiguration("rate"),
                        "loop": LaunchConfiguration("loop"),
                    }
                ],
                remappings=[("image", "/camera/image_raw"), ("camera_info", "/camera/camera_info")],
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
