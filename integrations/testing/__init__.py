"""Test support: loopback doubles of the hosted services ProxyStore integrates with."""
