#include "http/tls.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <string>
#include <vector>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/http/error.hpp>

namespace citadel::http::internal {
namespace {

constexpr std::size_t kMaxPeerChain = 16;

// The server accepts any client chain at the TLS layer: which CA a device
// must chain to depends on its tenant, which only the handler knows. The
// handler MUST verify Request::peer_chain before trusting it.
int AcceptAnyChain(int /*preverified*/, X509_STORE_CTX* /*context*/) { return 1; }

bool IsIpAddress(const std::string& host) {
  in_addr v4{};
  in6_addr v6{};
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 || inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

}  // namespace

std::string TakeOpenSslErrors() {
  std::string out;
  while (unsigned long code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof(buffer));
    if (!out.empty()) out += "; ";
    out += buffer;
  }
  return out.empty() ? std::string("unknown OpenSSL error") : out;
}

Expected<void> ApplyBaseSettings(SSL_CTX* context) {
  if (SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION) != 1) {
    return MakeError(ErrorCode::kCrypto, "setting TLS 1.2 as the minimum: " + TakeOpenSslErrors());
  }
  SSL_CTX_set_options(context, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  return kOk;
}

Expected<void> UseIdentity(SSL_CTX* context, const TlsIdentity& identity) {
  if (identity.key == nullptr) {
    return MakeError(ErrorCode::kInvalidArgument, "TLS identity has no private key");
  }
  auto chain = crypto::ParsePemChain(identity.certificate_chain_pem);
  if (!chain) return WrapError(chain.error(), "TLS identity certificate chain");
  if (chain->empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "TLS identity has no certificate");
  }
  if (X509_check_private_key(chain->front().x509(), identity.key->evp()) != 1) {
    ERR_clear_error();
    return MakeError(ErrorCode::kInvalidArgument,
                     "the TLS private key does not match the certificate (" + chain->front().SubjectOneLine() + ")");
  }
  if (SSL_CTX_use_certificate(context, chain->front().x509()) != 1) {
    return MakeError(ErrorCode::kCrypto, "installing the TLS certificate: " + TakeOpenSslErrors());
  }
  for (std::size_t i = 1; i < chain->size(); ++i) {
    // add1: OpenSSL takes its own reference; the Certificate keeps ours.
    if (SSL_CTX_add1_chain_cert(context, (*chain)[i].x509()) != 1) {
      return MakeError(ErrorCode::kCrypto,
                       "installing TLS chain certificate " + std::to_string(i) + ": " + TakeOpenSslErrors());
    }
  }
  if (SSL_CTX_use_PrivateKey(context, identity.key->evp()) != 1) {
    return MakeError(ErrorCode::kCrypto, "installing the TLS private key: " + TakeOpenSslErrors());
  }
  return kOk;
}

void RequestUnverifiedClientCertificates(SSL_CTX* context) {
  SSL_CTX_set_verify(context, SSL_VERIFY_PEER, AcceptAnyChain);
  // A resumed session has no peer chain (SSL_get_peer_cert_chain is empty),
  // so resumption would silently drop a device's intermediates.
  SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(context, SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(context, 0);
}

Expected<void> PinCertificateAuthorities(SSL_CTX* context, std::string_view ca_pem) {
  auto roots = crypto::ParsePemChain(ca_pem, 32);
  if (!roots) return WrapError(roots.error(), "pinned CA certificates");
  if (roots->empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "no pinned CA certificate given");
  }
  X509_STORE* store = SSL_CTX_get_cert_store(context);
  for (const crypto::Certificate& root : *roots) {
    if (X509_STORE_add_cert(store, root.x509()) != 1) {
      return MakeError(ErrorCode::kCrypto, "adding a pinned CA certificate: " + TakeOpenSslErrors());
    }
  }
  SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nullptr);
  return kOk;
}

Expected<void> ExpectServerIdentity(SSL* ssl, const std::string& host) {
  if (IsIpAddress(host)) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) != 1) {
      return MakeError(ErrorCode::kInvalidArgument, "cannot check server address " + host);
    }
    return kOk;
  }
  // SSL_set_tlsext_host_name spelled out: the macro's C cast trips -Wold-style-cast.
  long sni_set =
      SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(host.c_str()));
  if (sni_set != 1 || SSL_set1_host(ssl, host.c_str()) != 1) {
    return MakeError(ErrorCode::kInvalidArgument, "cannot check server name " + host + ": " + TakeOpenSslErrors());
  }
  return kOk;
}

std::vector<crypto::Certificate> PeerChain(SSL* ssl) {
  std::vector<crypto::Certificate> chain;
  X509* leaf = SSL_get1_peer_certificate(ssl);
  if (leaf == nullptr) return chain;
  chain.push_back(crypto::Certificate::FromX509(leaf));
  X509_free(leaf);
  // On the server side the stack excludes the leaf; skip it anyway should a
  // future OpenSSL include it.
  STACK_OF(X509)* rest = SSL_get_peer_cert_chain(ssl);
  int count = rest == nullptr ? 0 : sk_X509_num(rest);
  for (int i = 0; i < count && chain.size() < kMaxPeerChain; ++i) {
    X509* cert = sk_X509_value(rest, i);
    if (X509_cmp(cert, chain.front().x509()) == 0) continue;
    chain.push_back(crypto::Certificate::FromX509(cert));
  }
  return chain;
}

std::string VerifyFailure(SSL* ssl) {
  long result = SSL_get_verify_result(ssl);
  if (result == X509_V_OK) return "";
  return X509_verify_cert_error_string(result);
}

bool IsConnectionClosed(const boost::system::error_code& ec) {
  namespace asio = boost::asio;
  if (ec == boost::beast::http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
      ec == asio::error::connection_aborted || ec == asio::error::broken_pipe ||
      ec == asio::ssl::error::stream_truncated) {
    return true;
  }
  // OpenSSL 3 reports a TCP close without close_notify as this reason, which
  // Asio 1.74 does not map to stream_truncated.
  return ec.category() == asio::error::get_ssl_category() &&
         ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

}  // namespace citadel::http::internal
