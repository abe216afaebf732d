#pragma once
// Test PKI for the TLS tests: a certificate authority made on the spot, and server
// certificates it signs for chosen names, all as PEM files in a directory the test owns.
// Unlike make_self_signed_cert (fake_upstream.hpp), the names are the test's choice, so a
// certificate can be trusted and still be for another host.

#include <memory>
#include <string>

#include "integration/fake_upstream.hpp"  // TlsFiles

namespace it {

class TestCa {
 public:
  // A fresh CA (EC P-256) whose certificate is written to <dir>/<stem>-ca.pem.
  explicit TestCa(const std::string& dir, const std::string& stem = "test");
  ~TestCa();
  TestCa(const TestCa&) = delete;
  TestCa& operator=(const TestCa&) = delete;

  // The CA certificate: what tls.ca_file names to trust this CA.
  const std::string& cert_file() const;

  // A server certificate signed by this CA for `subject_alt_names` in OpenSSL's notation
  // ("DNS:upstream.test", "IP:127.0.0.1", comma-separated), with its key; written to
  // <dir>/<stem>-cert.pem (the leaf, then the CA) and <dir>/<stem>-key.pem.
  TlsFiles issue(const std::string& stem, const std::string& subject_alt_names) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace it
