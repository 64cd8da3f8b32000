"""A project on this stack: the components it installs from the library."""
