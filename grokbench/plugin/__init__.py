"""The plugin contract and its machinery: hook specifications, the classes plugins subclass, loading, the registry."""
