// Placeholder so the target builds; see Package.swift for what this module is for.
enum _IoMTRegistryPlaceholder {}
