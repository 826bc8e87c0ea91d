# cmake --install <build> --prefix P lays vguide out as:
#   P/bin/vguide-host
#   P/lib/libvguide.so.0.3.0 (+ libvguide.so.0.3, libvguide.so)
#   P/lib/vguide/plugins/lib<family>.so   (PluginManager looks there, next to libvguide.so)
#   P/include/vguide/...                  (SDK and runtime headers, the families' options headers)
#   P/lib/cmake/vguide/                   (the CMake package: find_package(vguide))
#   P/share/doc/vguide/                   (docs, README, example sources)
include(CMakePackageConfigHelpers)

# $ORIGIN-relative RPATHs keep an installed tree relocatable.
function(vguide_origin_rpath out from_dir)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
    set(${out} "${CMAKE_INSTALL_LIBDIR}" PARENT_SCOPE)
  else()
    file(RELATIVE_PATH rel "/${from_dir}" "/${CMAKE_INSTALL_LIBDIR}")
    string(REGEX REPLACE "/$" "" rel "${rel}")
    set(${out} "$ORIGIN/${rel}" PARENT_SCOPE)
  endif()
endfunction()

# The runtime: libvguide.so and the two interface targets consumers link.
set_target_properties(vguide_sdk PROPERTIES EXPORT_NAME sdk)
set_target_properties(vguide_runtime PROPERTIES EXPORT_NAME runtime)
install(TARGETS vguide vguide_sdk vguide_runtime EXPORT vguideTargets
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}")
install(DIRECTORY "${PROJECT_SOURCE_DIR}/sdk/include/vguide" "${PROJECT_SOURCE_DIR}/framework/include/vguide"
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}" FILES_MATCHING PATTERN "*.hpp")
# Each shipped family's options header (vguide/plugins/<family>/options.hpp) and its
# deprecated forwarder (vguide/options/<family>.hpp, until 0.4), for applications.
foreach(family IN LISTS VGUIDE_SHIPPED_PLUGINS)
  install(DIRECTORY "${PROJECT_SOURCE_DIR}/plugins/${family}/include/vguide"
    DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}" FILES_MATCHING PATTERN "*.hpp")
endforeach()

vguide_origin_rpath(host_rpath "${CMAKE_INSTALL_BINDIR}")
set_target_properties(vguide-host PROPERTIES INSTALL_RPATH "${host_rpath}")
install(TARGETS vguide-host RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")

vguide_origin_rpath(plugin_rpath "${VGUIDE_PLUGIN_INSTALL_DIR}")
set_target_properties(${VGUIDE_SHIPPED_PLUGINS} PROPERTIES INSTALL_RPATH "${plugin_rpath}")
install(TARGETS ${VGUIDE_SHIPPED_PLUGINS} LIBRARY DESTINATION "${VGUIDE_PLUGIN_INSTALL_DIR}")

# The CMake package. Its version is the project's; plugins are stamped with
# VGUIDE_SDK_VERSION: the two must agree.
file(STRINGS "${PROJECT_SOURCE_DIR}/sdk/include/vguide/version.hpp" sdk_version_line
     REGEX "^#define VGUIDE_SDK_VERSION ")
if(NOT sdk_version_line MATCHES "\"${PROJECT_VERSION}\"")
  message(FATAL_ERROR "sdk/include/vguide/version.hpp has '${sdk_version_line}', but the project version is "
                      "${PROJECT_VERSION}: the package version and the SDK version plugins are stamped with must agree")
endif()
install(EXPORT vguideTargets NAMESPACE vguide:: DESTINATION "${VGUIDE_CMAKE_INSTALL_DIR}")
configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/vguideConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/package/vguideConfig.cmake"
  INSTALL_DESTINATION "${VGUIDE_CMAKE_INSTALL_DIR}"
  PATH_VARS VGUIDE_PLUGIN_INSTALL_DIR)
# Before 1.0 every minor release may change libvguide's ABI (its SONAME is
# libvguide.so.MAJOR.MINOR), so only patch releases of the requested minor match.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/package/vguideConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}" COMPATIBILITY SameMinorVersion)
install(FILES
  "${PROJECT_BINARY_DIR}/package/vguideConfig.cmake"
  "${PROJECT_BINARY_DIR}/package/vguideConfigVersion.cmake"
  "${PROJECT_SOURCE_DIR}/cmake/vguidePlugin.cmake"
  "${PROJECT_SOURCE_DIR}/cmake/plugin_exports.map"
  DESTINATION "${VGUIDE_CMAKE_INSTALL_DIR}")

# Documentation, and the examples as sources to start from.
install(DIRECTORY "${PROJECT_SOURCE_DIR}/docs/" DESTINATION "${CMAKE_INSTALL_DOCDIR}")
install(FILES "${PROJECT_SOURCE_DIR}/README.md" DESTINATION "${CMAKE_INSTALL_DOCDIR}")
install(DIRECTORY
  "${PROJECT_SOURCE_DIR}/examples/out_of_tree_plugin"
  "${PROJECT_SOURCE_DIR}/examples/embed"
  "${PROJECT_SOURCE_DIR}/examples/models"
  DESTINATION "${CMAKE_INSTALL_DOCDIR}/examples")
