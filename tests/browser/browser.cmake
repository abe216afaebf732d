# The status page in Debian's headless Chromium (tests/browser, Node.js + playwright-core, which
# brings no browser of its own). Needs node >= 18.19, the chromium package and `npm ci` in
# tests/browser; whatever is missing makes the test fail saying what to install.
# SPANRELAY_NODE and SPANRELAY_NODE_VERSION come from tests/CMakeLists.txt.
set(_sr_browser_dir ${CMAKE_CURRENT_LIST_DIR})
if(SPANRELAY_NODE AND SPANRELAY_NODE_VERSION VERSION_GREATER_EQUAL 18.19)
  add_test(NAME browser:status-page
    COMMAND ${SPANRELAY_NODE} --test --test-reporter=spec status-page.test.mjs
    WORKING_DIRECTORY ${_sr_browser_dir})
  set_tests_properties(browser:status-page PROPERTIES
    ENVIRONMENT "SPANRELAY_BINARY=$<TARGET_FILE:spanrelay>;SPANRELAY_TEST_OUTPUT=${CMAKE_BINARY_DIR}/test-output/status-page"
    TIMEOUT 180)
else()
  add_test(NAME browser:status-page
    COMMAND sh -c "echo 'browser test: needs Node.js >= 18.19 (found: ${SPANRELAY_NODE_VERSION}); install Debian nodejs/npm, then npm ci in tests/browser' >&2; exit 1")
endif()
