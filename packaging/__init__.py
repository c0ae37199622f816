"""What installs popper: the launcher (launcher.py), the Linux service files
(linux/) and the SVR4 package for legacy hosts (sco/)."""
