#include "exporters/sender.hpp"

namespace spanrelay {

const char* failure_class_name(FailureClass c) noexcept {
  switch (c) {
    case FailureClass::kNone:
      return "none";
    case FailureClass::kAuth:
      return "auth";
    case FailureClass::kClient:
      return "4xx";
    case FailureClass::kServer:
      return "5xx";
    case FailureClass::kTimeout:
      return "timeout";
    case FailureClass::kConnection:
      return "connection";
    case FailureClass::kTls:
      return "tls";
  }
  return "none";
}

}  // namespace spanrelay
