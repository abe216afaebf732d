# The systemd unit (deploy/systemd/spanrelay.service) and `make install`: tests/systemd/*.sh.
# Included by tests/CMakeLists.txt. Each script FAILS, saying what to install, when
# systemd-analyze (package systemd) or strace (package strace) is missing.
set(_sr_systemd_tests ${CMAKE_CURRENT_LIST_DIR})
add_test(NAME systemd:unit
  COMMAND bash ${_sr_systemd_tests}/unit_test.sh ${PROJECT_SOURCE_DIR} $<TARGET_FILE:spanrelay>)
add_test(NAME systemd:install
  COMMAND bash ${_sr_systemd_tests}/install_test.sh ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
add_test(NAME systemd:sandbox
  COMMAND bash ${_sr_systemd_tests}/sandbox_test.sh ${PROJECT_SOURCE_DIR} $<TARGET_FILE:spanrelay>)
set_tests_properties(systemd:unit systemd:install PROPERTIES TIMEOUT 120)
set_tests_properties(systemd:sandbox PROPERTIES TIMEOUT 300)
# install_test.sh runs `cmake --install` on this build tree (install_manifest.txt,
# deploy/systemd/spanrelay.service): never two at once.
set_tests_properties(systemd:install PROPERTIES RESOURCE_LOCK spanrelay_build_install)
