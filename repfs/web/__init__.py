"""`repfs web`: the REST/JSON API over HTTPS, a process of its own beside the mount."""
