"""County indicators: source readers, code harmonisation, the point-in-time panel and labels."""
