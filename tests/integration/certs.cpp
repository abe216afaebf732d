#include "integration/certs.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <cstdio>
#include <stdexcept>

namespace it {

namespace {

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
  void operator()(X509* c) const { X509_free(c); }
};
struct FileClose {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;
using File = std::unique_ptr<std::FILE, FileClose>;

void require(bool ok, const std::string& what) {
  if (!ok) {
    throw std::runtime_error("test certificates: " + what + " failed");
  }
}

Key new_key() {
  Key key(EVP_EC_gen("P-256"));
  require(key != nullptr, "generating an EC key");
  return key;
}

// Adds one X.509v3 extension, `issuer` being the signing certificate (itself for a CA).
void extend(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  require(ext != nullptr, "extension " + value);
  const int added = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  require(added == 1, "adding extension " + value);
}

// A certificate for `key`, named `common_name`, valid from an hour ago for a day; not signed.
Cert new_cert(EVP_PKEY* key, const std::string& common_name) {
  static std::atomic<long> serial{1};
  Cert cert(X509_new());
  require(cert != nullptr, "X509_new");
  X509_set_version(cert.get(), 2);  // v3
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60L * 60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24L * 60 * 60);
  require(X509_set_pubkey(cert.get(), key) == 1, "X509_set_pubkey");
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                             -1, 0);
  return cert;
}

File open_for_writing(const std::string& path) {
  File f(std::fopen(path.c_str(), "w"));
  require(f != nullptr, "opening " + path);
  return f;
}

}  // namespace

struct TestCa::Impl {
  std::string dir;
  std::string cert_file;
  Key key;
  Cert cert;
};

TestCa::TestCa(const std::string& dir, const std::string& stem) : impl_(std::make_unique<Impl>()) {
  impl_->dir = dir;
  impl_->cert_file = dir + "/" + stem + "-ca.pem";
  impl_->key = new_key();
  impl_->cert = new_cert(impl_->key.get(), "spanrelay " + stem + " CA");
  X509* ca = impl_->cert.get();
  require(X509_set_issuer_name(ca, X509_get_subject_name(ca)) == 1, "CA issuer name");
  extend(ca, ca, NID_basic_constraints, "critical,CA:TRUE");
  extend(ca, ca, NID_key_usage, "critical,keyCertSign,cRLSign");
  extend(ca, ca, NID_subject_key_identifier, "hash");
  require(X509_sign(ca, impl_->key.get(), EVP_sha256()) > 0, "signing the CA");
  const File out = open_for_writing(impl_->cert_file);
  require(PEM_write_X509(out.get(), ca) == 1, "writing " + impl_->cert_file);
}

TestCa::~TestCa() = default;

const std::string& TestCa::cert_file() const { return impl_->cert_file; }

TlsFiles TestCa::issue(const std::string& stem, const std::string& subject_alt_names) const {
  const Key key = new_key();
  // The common name is deliberately no host name: only the SANs may match.
  const Cert cert = new_cert(key.get(), "spanrelay test server " + stem);
  X509* leaf = cert.get();
  X509* ca = impl_->cert.get();
  require(X509_set_issuer_name(leaf, X509_get_subject_name(ca)) == 1, "issuer name");
  extend(leaf, ca, NID_basic_constraints, "critical,CA:FALSE");
  extend(leaf, ca, NID_key_usage, "critical,digitalSignature,keyEncipherment");
  extend(leaf, ca, NID_ext_key_usage, "serverAuth");
  extend(leaf, ca, NID_authority_key_identifier, "keyid:always");
  extend(leaf, ca, NID_subject_alt_name, subject_alt_names);
  require(X509_sign(leaf, impl_->key.get(), EVP_sha256()) > 0, "signing " + stem);

  TlsFiles files{impl_->dir + "/" + stem + "-cert.pem", impl_->dir + "/" + stem + "-key.pem"};
  {
    const File out = open_for_writing(files.cert_file);
    require(PEM_write_X509(out.get(), leaf) == 1 && PEM_write_X509(out.get(), ca) == 1,
            "writing " + files.cert_file);
  }
  const File out = open_for_writing(files.key_file);
  require(PEM_write_PrivateKey(out.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1,
          "writing " + files.key_file);
  return files;
}

}  // namespace it
