"""Robot links: the declared RobotLink interface (link.py), the ROS 2 arm adapter over DDS
(ros2.py, no rclpy), and the arm + hand composite (composite.py). Importing this package imports
neither cyclonedds nor the firmware bridge; connecting a ROS 2 link does."""
