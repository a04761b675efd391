"""One adapter per AWS service. Each receives its boto3 client in its constructor."""
