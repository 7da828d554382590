"""Protocol doubles: local servers that speak the published APIs of the upstreams we call."""
