#include "common/grpc_tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace chat {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", path, "': cannot read: ", std::strerror(errno)));
  }
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat(what, " '", path, "': read error"));
  return bytes.str();
}

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no PEM block found";
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return text;
}

// The certificates of a PEM file, first one returned; at least one required.
absl::StatusOr<X509Ptr> ParseCertificates(const std::string& pem, const std::string& path,
                                          const char* what) {
  ERR_clear_error();
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr first(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (first == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", path, "': not a PEM certificate (", OpenSslError(), ")"));
  }
  // The rest of a chain must parse too: gRPC would refuse the whole file later.
  while (X509Ptr next{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)}) {
  }
  const unsigned long last = ERR_peek_last_error();
  if (last != 0 &&
      !(ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", path, "': a certificate does not parse (", OpenSslError(), ")"));
  }
  ERR_clear_error();
  return first;
}

// A certificate and its private key, checked to belong together.
absl::Status CheckKeyPair(const std::string& cert_pem, const std::string& cert_path,
                          const std::string& key_pem, const std::string& key_path) {
  auto cert = ParseCertificates(cert_pem, cert_path, "TLS certificate");
  if (!cert.ok()) return cert.status();
  ERR_clear_error();
  BioPtr bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TLS key '", key_path, "': not an unencrypted PEM private key (", OpenSslError(), ")"));
  }
  if (X509_check_private_key(cert->get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("TLS key '", key_path, "' is not the key of certificate '", cert_path, "'"));
  }
  return absl::OkStatus();
}

struct KeyPair {
  std::string cert, key;
};

absl::StatusOr<KeyPair> LoadKeyPair(const std::string& cert_path, const std::string& key_path) {
  auto cert = ReadFile(cert_path, "TLS certificate");
  if (!cert.ok()) return cert.status();
  auto key = ReadFile(key_path, "TLS key");
  if (!key.ok()) return key.status();
  if (absl::Status s = CheckKeyPair(*cert, cert_path, *key, key_path); !s.ok()) return s;
  return KeyPair{*std::move(cert), *std::move(key)};
}

absl::StatusOr<std::string> LoadCa(const std::string& path) {
  auto ca = ReadFile(path, "TLS CA");
  if (!ca.ok()) return ca.status();
  auto parsed = ParseCertificates(*ca, path, "TLS CA");
  if (!parsed.ok()) return parsed.status();
  return ca;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> LoadServerCredentials(
    const GrpcServerTls& tls) {
  if (tls.cert_file.empty() && tls.key_file.empty()) {
    if (!tls.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "a client CA needs TLS: set the server's certificate and key too");
    }
    return grpc::InsecureServerCredentials();
  }
  if (tls.cert_file.empty() || tls.key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both a certificate and its key");
  }
  auto pair = LoadKeyPair(tls.cert_file, tls.key_file);
  if (!pair.ok()) return pair.status();
  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_key_cert_pairs.push_back({pair->key, pair->cert});
  if (!tls.client_ca_file.empty()) {
    auto ca = LoadCa(tls.client_ca_file);
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *std::move(ca);
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<ChannelSecurity> LoadChannelSecurity(const GrpcClientTls& tls) {
  if (tls.ca_file.empty()) {
    if (!tls.cert_file.empty() || !tls.key_file.empty() || !tls.server_name.empty()) {
      return absl::InvalidArgumentError(
          "a client certificate or server name needs TLS: set the CA that signed the server's "
          "certificate too");
    }
    return ChannelSecurity{};
  }
  auto ca = LoadCa(tls.ca_file);
  if (!ca.ok()) return ca.status();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = *std::move(ca);
  if (!tls.cert_file.empty() || !tls.key_file.empty()) {
    if (tls.cert_file.empty() || tls.key_file.empty()) {
      return absl::InvalidArgumentError("a client certificate needs both the certificate and key");
    }
    auto pair = LoadKeyPair(tls.cert_file, tls.key_file);
    if (!pair.ok()) return pair.status();
    options.pem_cert_chain = std::move(pair->cert);
    options.pem_private_key = std::move(pair->key);
  }
  return ChannelSecurity{grpc::SslCredentials(options), tls.server_name};
}

}  // namespace chat
