"""lrtool: learning-rate range tests and one-cycle training for config-defined experiments."""

__version__ = "0.1.0"
