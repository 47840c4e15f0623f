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
// mix. The file is created with exactly `mode` (e.g. 0600 for keys),
// whatever the umask.
//
// The temporary file is ".<name>.tmp.<16 random hex digits>" beside path,
// created exclusively, so concurrent writers of one path never share one
// (the last rename wins). Every error removes it; only a crash (or power
// loss) before the rename can leave one behind. Readers open path itself
// and never see it; code that lists a directory written this way must
// skip hidden names, and may delete them when no writer can be running
// (AppStore::RemoveLeftovers does when the store opens).
//
// Success means the new content is durable. An error before the rename
// leaves path as it was; an error syncing the directory after the rename
// (kIo, "replaced ... but cannot sync the directory") means path already
// holds the new content but a crash may still bring back the old one, so
// the caller must treat the write as failed.
Expected<void> WriteFileAtomic(const std::filesystem::path& path, std::string_view data, unsigned mode = 0644);

// Creates a directory (and parents) with the given mode if missing.
Expected<void> EnsureDirectory(const std::filesystem::path& path, unsigned mode = 0755);

}  // namespace citadel
