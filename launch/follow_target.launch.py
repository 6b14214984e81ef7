"""tracker_node + follower_node: drive a base towards the selected target.

    ros2 launch meta_tracker_ros follow_target.launch.py image:=/camera/image_raw \
        cmd_vel:=/robot/cmd_vel target_id:=person
The follower starts disarmed; arm it with
    ros2 service call /follower_node/enable std_srvs/srv/SetBool "{data: true}"
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
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
                description="CameraInfo topic (angles for the follower, 3D positions)",
            ),
            DeclareLaunchArgument(
                "depth",
                default_value="/camera/depth/image_rect_raw",
                description="Aligned depth image topic (optional)",
            ),
            DeclareLaunchArgument(
                "cmd_vel",
                default_value="/cmd_vel",
                description="Where the follower publishes its Twist",
            ),
            DeclareLaunchArgument(
                "target_id", default_value="", description="Target to follow ('' = the first)"
            ),
            DeclareLaunchArgument(
                "tracker_params",
                default_value=str(share / "config" / "tracker_node.yaml"),
                description="tracker_node parameters (ROS format)",
            ),
            DeclareLaunchArgument(
                "follower_params",
                default_value=str(share / "config" / "follower_node.yaml"),
                description="follower_node parameters (ROS format)",
            ),
            Node(
                package="meta_tracker_ros",
                executable="tracker_node",
                name="tracker_node",
                output="screen",
                parameters=[LaunchConfiguration("tracker_params")],
                remappings=[
                    ("image", LaunchConfiguration("image")),
                    ("camera_info", LaunchConfiguration("camera_info")),
                    ("depth", LaunchConfiguration("depth")),
                ],
            ),
            Node(
                package="meta_tracker_ros",
                executable="follower_node",
                name="follower_node",
                output="screen",
                parameters=[
                    LaunchConfiguration("follower_params"),
                    {"target_id": LaunchConfiguration("target_id")},
                ],
                remappings=[
                    ("tracks", "/tracker_node/tracks"),
                    ("camera_info", LaunchConfiguration("camera_info")),
                    ("cmd_vel", LaunchConfiguration("cmd_vel")),
                ],
            ),
        ]
    )
