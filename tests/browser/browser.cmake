# The status page in Debian's headless Chromium (tests/browser, Node.js + playwright-core, which
# brings no browser of its own). Needs node >= 18.19, the chromium package and `npm ci` in
# tests/browser; whatever is missing makes the test fail saying what to install.
set(_sr_browser_dir ${CMAKE_CURRENT_LIST_DIR})
find_program(SPANRELAY_NODE NAMES node nodejs)
set(_sr_browser_node_version "")
if(SPANRELAY_NODE)
  execute_process(COMMAND ${SPANRELAY_NODE} --version OUTPUT_VARIABLE _sr_browser_node_version
    OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  string(REGEX REPLACE "^v" "" _sr_browser_node_version "${_sr_browser_node_version}")
endif()
if(SPANRELAY_NODE AND _sr_browser_node_version VERSION_GREATER_EQUAL 18.19)
  add_test(NAME browser:status-page
    COMMAND ${SPANRELAY_NODE} --test --test-reporter=spec status-page.test.mjs
    WORKING_DIRECTORY ${_sr_browser_dir})
  set_tests_properties(browser:status-page PROPERTIES
    ENVIRONMENT "SPANRELAY_BINARY=$<TARGET_FILE:spanrelay>;SPANRELAY_TEST_OUTPUT=${CMAKE_BINARY_DIR}/test-output/status-page"
    TIMEOUT 180)
else()
  add_test(NAME browser:status-page
    COMMAND sh -c "echo 'browser test: needs Node.js >= 18.19 (found: ${_sr_browser_node_version}); install Debian nodejs/npm, then npm ci in tests/browser' >&2; exit 1")
endif()
