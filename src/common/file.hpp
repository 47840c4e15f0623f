// File helpers that keep data intact across crashes and power loss.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include "common/error.hpp"

namespace citadel {

// Reads a whole file, refusing files larger than max_bytes.
Expected<std::string> ReadFile(const std::filesystem::path& path, std::size_t max_bytes = 16u << 20);

// Writes data to path atomically: a temporary file in the same directory is
// written, fsync'd, renamed over path, and the directory is fsync'd. After a
// crash at any point, path holds either the old or the new content, never a
// mix. The file is created with `mode` (e.g. 0600 for keys).
Expected<void> WriteFileAtomic(const std::filesystem::path& path, std::string_view data, unsigned mode = 0644);

// Creates a directory (and parents) with the given mode if missing.
Expected<void> EnsureDirectory(const std::filesystem::path& path, unsigned mode = 0755);

}  // namespace citadel
