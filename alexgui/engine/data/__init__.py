"""Images in: decoding any file, class folders, the decoded cache, demo data, image statistics, transforms."""
