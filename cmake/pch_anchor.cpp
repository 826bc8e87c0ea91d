// Anchor translation unit: builds the shared precompiled header.
