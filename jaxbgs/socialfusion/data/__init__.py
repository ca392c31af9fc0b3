"""SocialFusion data: readers of the five datasets' native layouts, the common record, geometry, demo data."""
