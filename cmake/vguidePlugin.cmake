# vguide_add_plugin(<name> [SOURCES] <source>...)
#
# Builds a guide plugin: a MODULE library lib<name>.so that links vguide::sdk, is
# compiled with hidden visibility and exports nothing but its descriptor
# (`vguide_plugin`). The descriptor's version fields (ABI, SDK and LibTorch versions)
# are stamped by VGUIDE_DECLARE_PLUGIN from the headers this target compiles against,
# which are those of the vguide package that defined vguide::sdk.
#
# The same file serves vguide's own build (plugins/, tests/) and plugin authors, who
# get it from find_package(vguide).
#
# Example:
#   find_package(vguide 0.3 REQUIRED)
#   vguide_add_plugin(myflow SOURCES myflow.cpp)   # -> ./libmyflow.so

# Captured now: inside the function CMAKE_CURRENT_LIST_DIR is the caller's folder.
set(_VGUIDE_PLUGIN_EXPORTS_MAP "${CMAKE_CURRENT_LIST_DIR}/plugin_exports.map")

function(vguide_add_plugin name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "SOURCES")
  set(sources ${arg_SOURCES} ${arg_UNPARSED_ARGUMENTS})
  if(NOT sources)
    message(FATAL_ERROR "vguide_add_plugin(${name}): no sources given")
  endif()
  if(NOT TARGET vguide::sdk)
    message(FATAL_ERROR "vguide_add_plugin(${name}): no target vguide::sdk; call find_package(vguide) first")
  endif()

  add_library(${name} MODULE ${sources})
  target_link_libraries(${name} PRIVATE vguide::sdk)
  set_target_properties(${name} PROPERTIES
    PREFIX "lib"
    SUFFIX ".so"
    CXX_EXTENSIONS OFF
    POSITION_INDEPENDENT_CODE ON
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  # Hidden visibility does not cover header-only code compiled with default
  # visibility (Boost): the version script makes every symbol but the descriptor local.
  target_link_options(${name} PRIVATE "LINKER:--version-script=${_VGUIDE_PLUGIN_EXPORTS_MAP}")
  set_property(TARGET ${name} APPEND PROPERTY LINK_DEPENDS "${_VGUIDE_PLUGIN_EXPORTS_MAP}")
endfunction()
