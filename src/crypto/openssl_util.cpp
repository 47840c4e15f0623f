#include "crypto/openssl_util.hpp"

#include <openssl/crypto.h>
#include <openssl/err.h>

namespace citadel::crypto::internal {

Error OpenSslError(ErrorCode code, std::string_view context) {
  std::string message(context);
  // The earliest error names the root cause; later ones are the call stack.
  unsigned long first = ERR_get_error();
  if (first != 0) {
    char buffer[256];
    ERR_error_string_n(first, buffer, sizeof buffer);
    message += ": ";
    message += buffer;
  }
  ERR_clear_error();
  return Error(code, std::move(message));
}

void Wipe(std::string& data) noexcept {
  // Growing within capacity never allocates.
  data.resize(data.capacity());
  OPENSSL_cleanse(data.data(), data.size());
  data.clear();
}

BioPtr ReadBio(std::string_view text) {
  if (text.size() > static_cast<std::size_t>(INT_MAX)) return nullptr;
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::string BioContents(BIO* bio) {
  BUF_MEM* memory = nullptr;
  BIO_get_mem_ptr(bio, &memory);
  if (memory == nullptr || memory->data == nullptr) return {};
  return std::string(memory->data, memory->length);
}

}  // namespace citadel::crypto::internal
