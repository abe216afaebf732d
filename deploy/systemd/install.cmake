# Install-time part of `make install` / `cmake --install` (included from cmake_install.cmake by
# an install(CODE) rule in the top-level CMakeLists.txt, which sets SPANRELAY_SOURCE_DIR,
# SPANRELAY_BINARY_DIR, SPANRELAY_INSTALL_BINDIR, SPANRELAY_INSTALL_DOCDIR, SPANRELAY_CONFIG_DIR,
# SPANRELAY_SYSTEMD_UNIT_DIR and SPANRELAY_SYSTEMD_SYSTEM_UNIT_DIR).
#
# It runs at install time, so CMAKE_INSTALL_PREFIX is the prefix actually installed to
# (`cmake --install build --prefix /usr` included), and file(INSTALL) honours DESTDIR and
# records every file in install_manifest.txt.
#
#  - deploy/systemd/spanrelay.service, with its /usr/local paths rewritten to the installed
#    binary, docs and config directory, into <prefix>/lib/systemd/system (systemd searches
#    /usr/local/lib/systemd/system too), or systemd's own unit directory when the prefix is /usr.
#  - config/examples/systemd.yaml as <config dir>/spanrelay.yaml (default /etc/spanrelay, also
#    for PREFIX=/usr/local, as the FHS wants), unless that file already exists: an operator's
#    configuration is never overwritten.

cmake_minimum_required(VERSION 3.25)

foreach(var SPANRELAY_SOURCE_DIR SPANRELAY_BINARY_DIR SPANRELAY_INSTALL_BINDIR
    SPANRELAY_INSTALL_DOCDIR SPANRELAY_CONFIG_DIR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "deploy/systemd/install.cmake: ${var} is not set")
  endif()
endforeach()

function(spanrelay_abs out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

spanrelay_abs(_sr_bindir "${SPANRELAY_INSTALL_BINDIR}")
spanrelay_abs(_sr_docdir "${SPANRELAY_INSTALL_DOCDIR}")
set(_sr_confdir "${SPANRELAY_CONFIG_DIR}")
if(NOT IS_ABSOLUTE "${_sr_confdir}")
  message(FATAL_ERROR "SPANRELAY_CONFIG_DIR must be an absolute path (got ${_sr_confdir})")
endif()

if(SPANRELAY_SYSTEMD_UNIT_DIR)
  spanrelay_abs(_sr_unitdir "${SPANRELAY_SYSTEMD_UNIT_DIR}")
elseif(CMAKE_INSTALL_PREFIX STREQUAL "/usr" AND SPANRELAY_SYSTEMD_SYSTEM_UNIT_DIR)
  set(_sr_unitdir "${SPANRELAY_SYSTEMD_SYSTEM_UNIT_DIR}")
else()
  set(_sr_unitdir "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
endif()

# ---- the unit: the checked-in file is the one for PREFIX=/usr/local and /etc/spanrelay ----
file(READ "${SPANRELAY_SOURCE_DIR}/deploy/systemd/spanrelay.service" _sr_unit)
foreach(pair
    "/usr/local/bin/spanrelay|${_sr_bindir}/spanrelay"
    "/usr/local/share/doc/spanrelay|${_sr_docdir}"
    "/etc/spanrelay|${_sr_confdir}")
  string(REPLACE "|" ";" pair "${pair}")
  list(GET pair 0 from)
  list(GET pair 1 to)
  string(FIND "${_sr_unit}" "${from}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "deploy/systemd/spanrelay.service no longer mentions ${from}: "
      "update deploy/systemd/install.cmake with it")
  endif()
  string(REPLACE "${from}" "${to}" _sr_unit "${_sr_unit}")
endforeach()
set(_sr_unit_out "${SPANRELAY_BINARY_DIR}/deploy/systemd/spanrelay.service")
file(WRITE "${_sr_unit_out}" "${_sr_unit}")
file(INSTALL DESTINATION "${_sr_unitdir}" TYPE FILE
  PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
  FILES "${_sr_unit_out}")

# ---- the configuration, never over an existing one ----
set(_sr_conf "${_sr_confdir}/spanrelay.yaml")
if(EXISTS "$ENV{DESTDIR}${_sr_conf}")
  message(STATUS "Keeping existing: $ENV{DESTDIR}${_sr_conf} (the shipped one is "
    "${_sr_docdir}/examples/systemd.yaml)")
else()
  file(INSTALL DESTINATION "${_sr_confdir}" TYPE FILE
    PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
    DIR_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                    WORLD_READ WORLD_EXECUTE
    FILES "${SPANRELAY_SOURCE_DIR}/config/examples/systemd.yaml"
    RENAME spanrelay.yaml)
endif()
