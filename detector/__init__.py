"""smsguard: streaming spam-SMS detection for bulk-SMS (106) ports."""

__version__ = "0.1.0"
