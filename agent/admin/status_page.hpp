#pragma once
// The admin endpoint's status page (GET /): one self-contained HTML document, compiled into the
// binary from agent/admin/status_page.html. It renders GET status.json in the browser.

#include <string_view>

namespace spanrelay {

// The page's bytes (UTF-8 HTML); static storage, valid for the life of the process.
std::string_view status_page_html();

}  // namespace spanrelay
