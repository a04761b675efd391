"""Local AWS: moto on loopback plus the emulation of the APIs moto lacks (never used in the cloud)."""
