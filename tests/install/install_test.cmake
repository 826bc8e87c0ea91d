# Steps of the install tests (tests/install/CMakeLists.txt), run as
#   cmake -DSTEP=<step> -DPREFIX=... [-DWORK=...] ... -P install_test.cmake
# Each step fails (FATAL_ERROR, non-zero exit) with one message saying what was wrong.
cmake_minimum_required(VERSION 3.18)
string(REPLACE "," ";" SHIPPED_PLUGINS "${SHIPPED_PLUGINS}")
set(host "${PREFIX}/${BINDIR}/vguide-host")
set(plugin_dir "${PREFIX}/${LIBDIR}/vguide/plugins")
set(models "${SOURCE_DIR}/examples/models")

# run(<out-prefix> <command>...): runs with VGUIDE_PLUGIN_PATH unset, so that only the
# install's own lookup can find plugins; sets <out-prefix>_rc, _out, _err.
function(run out)
  execute_process(COMMAND "${CMAKE_COMMAND}" -E env --unset=VGUIDE_PLUGIN_PATH ${ARGN}
    RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
  set(${out}_rc "${rc}" PARENT_SCOPE)
  set(${out}_out "${stdout}" PARENT_SCOPE)
  set(${out}_err "${stderr}" PARENT_SCOPE)
endfunction()

function(run_ok what)
  run(r ${ARGN})
  if(NOT r_rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (exit ${r_rc}):\n${r_out}\n${r_err}")
  endif()
  set(run_out "${r_out}" PARENT_SCOPE)
  set(run_err "${r_err}" PARENT_SCOPE)
endfunction()

function(expect_file path)
  if(NOT EXISTS "${path}")
    message(FATAL_ERROR "missing from the install: ${path}")
  endif()
endfunction()

# A fresh CMake project from `source` in ${WORK}/build, configured against ${PREFIX}
# only: the compiler, generator, build type and compiler launcher of this build, and
# where LibTorch is (a dependency, found the same way by any user), but nothing of
# vguide's source or build tree. `extra` holds further -D arguments.
function(build_against_install source)
  file(REMOVE_RECURSE "${WORK}/build")
  set(args -S "${source}" -B "${WORK}/build" -G "${GENERATOR}" "-DCMAKE_PREFIX_PATH=${PREFIX}"
           "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
  if(MAKE_PROGRAM)
    list(APPEND args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
  endif()
  if(BUILD_TYPE)
    list(APPEND args "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
  endif()
  if(COMPILER_LAUNCHER)
    list(APPEND args "-DCMAKE_CXX_COMPILER_LAUNCHER=${COMPILER_LAUNCHER}")
  endif()
  if(TORCH_DIR)
    list(APPEND args "-DTorch_DIR=${TORCH_DIR}")
  endif()
  run_ok("configuring ${source} against ${PREFIX}" "${CMAKE_COMMAND}" ${args} ${ARGN})
  # The package found must be the one just installed.
  file(STRINGS "${WORK}/build/CMakeCache.txt" found REGEX "^vguide_DIR:")
  if(NOT found STREQUAL "vguide_DIR:PATH=${PREFIX}/${LIBDIR}/cmake/vguide")
    message(FATAL_ERROR "${source} found another vguide package: ${found}")
  endif()
  run_ok("building ${source}" "${CMAKE_COMMAND}" --build "${WORK}/build" --parallel 1)
endfunction()

# "-0.0123" -> -123: a number printed with %.4f in units of 1e-4 (CMake's math is integer).
function(ten_thousandths out text)
  if(NOT text MATCHES "^(-?)([0-9]+)\\.([0-9][0-9][0-9][0-9])$")
    message(FATAL_ERROR "not a number with four decimals: '${text}'")
  endif()
  math(EXPR value "${CMAKE_MATCH_2} * 10000 + ${CMAKE_MATCH_3}")
  if(CMAKE_MATCH_1)
    math(EXPR value "-${value}")
  endif()
  set(${out} "${value}" PARENT_SCOPE)
endfunction()

# Fails unless |got - want| <= tolerance, got and want printed with %.4f, the
# tolerance in units of 1e-4.
function(expect_close what got want tolerance)
  ten_thousandths(g "${got}")
  ten_thousandths(w "${want}")
  math(EXPR diff "${g} - ${w}")
  if(diff LESS 0)
    math(EXPR diff "-${diff}")
  endif()
  if(diff GREATER tolerance)
    message(FATAL_ERROR "${what} is ${got}, but should be within ${tolerance}e-4 of ${want}")
  endif()
endfunction()

if(STEP STREQUAL "install")
  file(REMOVE_RECURSE "${PREFIX}")
  run_ok("cmake --install" "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}")

elseif(STEP STREQUAL "layout")
  foreach(f
      "${BINDIR}/vguide-host"
      "${LIBDIR}/libvguide.so"
      "include/vguide/plugin.hpp" "include/vguide/flow.hpp" "include/vguide/flow/made.hpp"
      "include/vguide/runtime/plugin_manager.hpp" "include/vguide/model/program_model.hpp"
      "include/vguide/plugins/normal/options.hpp" "include/vguide/options/normal.hpp"
      "${LIBDIR}/cmake/vguide/vguideConfig.cmake" "${LIBDIR}/cmake/vguide/vguideConfigVersion.cmake"
      "${LIBDIR}/cmake/vguide/vguideTargets.cmake" "${LIBDIR}/cmake/vguide/vguidePlugin.cmake"
      "${LIBDIR}/cmake/vguide/plugin_exports.map"
      "share/doc/vguide/plugins.md" "share/doc/vguide/embedding.md" "share/doc/vguide/README.md"
      "share/doc/vguide/examples/out_of_tree_plugin/CMakeLists.txt"
      "share/doc/vguide/examples/out_of_tree_plugin/README.md"
      "share/doc/vguide/examples/embed/main.cpp")
    expect_file("${PREFIX}/${f}")
  endforeach()
  foreach(family IN LISTS SHIPPED_PLUGINS)
    expect_file("${plugin_dir}/lib${family}.so")
  endforeach()
  # The SONAME, and RUNPATHs relative to $ORIGIN that reach lib/ from bin/ and from
  # lib/vguide/plugins/.
  find_program(READELF readelf REQUIRED)
  run_ok("readelf" "${READELF}" -d "${PREFIX}/${LIBDIR}/libvguide.so")
  if(NOT run_out MATCHES "\\(SONAME\\)[^\n]*\\[libvguide\\.so\\.[0-9]+\\.[0-9]+\\]")
    message(FATAL_ERROR "libvguide.so has no versioned SONAME:\n${run_out}")
  endif()
  string(REGEX MATCH "libvguide\\.so\\.[0-9]+\\.[0-9]+" soname "${run_out}")
  expect_file("${PREFIX}/${LIBDIR}/${soname}")
  run_ok("readelf" "${READELF}" -d "${host}")
  if(NOT run_out MATCHES "\\((RUNPATH|RPATH)\\)[^\n]*\\[\\$ORIGIN/\\.\\./${LIBDIR}[]:]")
    message(FATAL_ERROR "vguide-host has no \$ORIGIN-relative RUNPATH to ${LIBDIR}:\n${run_out}")
  endif()
  if(run_out MATCHES "${BUILD_DIR}")
    message(FATAL_ERROR "the installed vguide-host refers to the build tree:\n${run_out}")
  endif()
  run_ok("readelf" "${READELF}" -d "${plugin_dir}/libnormal.so")
  if(NOT run_out MATCHES "\\((RUNPATH|RPATH)\\)[^\n]*\\[\\$ORIGIN/\\.\\./\\.\\.[]:]")
    message(FATAL_ERROR "libnormal.so has no \$ORIGIN-relative RUNPATH to ${LIBDIR}:\n${run_out}")
  endif()
  if(NOT run_out MATCHES "\\(NEEDED\\)[^\n]*\\[${soname}\\]")
    message(FATAL_ERROR "libnormal.so does not depend on ${soname}:\n${run_out}")
  endif()

elseif(STEP STREQUAL "list_plugins")
  run_ok("vguide-host --list-plugins" "${host}" --list-plugins)
  string(REGEX MATCHALL "\n" newlines "${run_out}")  # descriptions may hold ';'
  list(LENGTH newlines count)
  list(LENGTH SHIPPED_PLUGINS shipped)
  math(EXPR shipped "${shipped} + 1")  # one line per family, then the folders searched
  if(NOT count EQUAL shipped OR NOT run_err STREQUAL "" OR NOT run_out MATCHES "\nsearched: ")
    message(FATAL_ERROR "expected ${shipped} families, got:\n${run_out}${run_err}")
  endif()
  foreach(family IN LISTS SHIPPED_PLUGINS)
    # name <tab> description <tab> the library it came from: the installed one.
    if(NOT run_out MATCHES "(^|\n)${family}\t[^\t\n]+\t${plugin_dir}/lib${family}\\.so(\n|$)")
      message(FATAL_ERROR "'${family}' is not listed from ${plugin_dir}:\n${run_out}")
    endif()
  endforeach()

elseif(STEP STREQUAL "out_of_tree_plugin")
  # From a copy, as an author would have it: no relative path into vguide's tree.
  file(REMOVE_RECURSE "${WORK}")
  file(COPY "${SOURCE_DIR}/examples/out_of_tree_plugin/" DESTINATION "${WORK}/src")
  build_against_install("${WORK}/src")
  expect_file("${WORK}/build/librealnvp.so")
  file(MAKE_DIRECTORY "${WORK}/out")
  run_ok("vguide-host with librealnvp.so" "${host}" --plugin "${WORK}/build/librealnvp.so"
         --model "${models}/eight_schools.qvr" --data "${models}/eight_schools.json"
         --steps 200 --output "${WORK}/out")
  if(NOT run_out MATCHES "^fitted eight_schools with realnvp in 200 steps; ELBO -?[0-9]")
    message(FATAL_ERROR "unexpected output of the fit:\n${run_out}")
  endif()
  file(READ "${WORK}/out/summary.json" summary)
  string(JSON guide GET "${summary}" guide)
  string(JSON steps GET "${summary}" steps)
  string(JSON elbo_type TYPE "${summary}" elbo)
  expect_file("${WORK}/out/draws.csv")
  string(JSON theta_raw LENGTH "${summary}" sites theta_raw mean)
  string(JSON tau_sd GET "${summary}" sites tau sd)
  if(NOT guide STREQUAL "realnvp" OR NOT steps EQUAL 200 OR NOT elbo_type STREQUAL "NUMBER" OR
     NOT theta_raw EQUAL 8 OR NOT tau_sd GREATER 0)
    message(FATAL_ERROR "summary.json is not a realnvp fit of eight schools:\n${summary}")
  endif()

elseif(STEP STREQUAL "embed")
  file(REMOVE_RECURSE "${WORK}")
  file(COPY "${SOURCE_DIR}/examples/embed/" DESTINATION "${WORK}/src")
  build_against_install("${WORK}/src")
  # Run in an empty folder: the application must write nothing.
  file(MAKE_DIRECTORY "${WORK}/run")
  execute_process(COMMAND "${CMAKE_COMMAND}" -E env --unset=VGUIDE_PLUGIN_PATH "${WORK}/build/vguide_embed_demo"
    WORKING_DIRECTORY "${WORK}/run" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "vguide_embed_demo failed (exit ${rc}):\n${out}\n${err}")
  endif()
  file(GLOB written "${WORK}/run/*")
  if(written)
    message(FATAL_ERROR "vguide_embed_demo wrote files: ${written}")
  endif()
  # site, mean, sd, exact mean, exact sd: the normal guide is exact for this model.
  set(num "(-?[0-9]+\\.[0-9]+)")
  foreach(site alpha beta)
    if(NOT out MATCHES "\n${site} +${num} +${num} +${num} +${num}\n")
      message(FATAL_ERROR "no posterior line for '${site}':\n${out}")
    endif()
    set(mean "${CMAKE_MATCH_1}")
    set(sd "${CMAKE_MATCH_2}")
    set(exact_mean "${CMAKE_MATCH_3}")
    set(exact_sd "${CMAKE_MATCH_4}")
    # Within a tenth of the posterior sd (the data move the means by many sds).
    ten_thousandths(sd_units "${exact_sd}")
    math(EXPR tenth "${sd_units} / 10")
    expect_close("posterior mean of ${site}" "${mean}" "${exact_mean}" "${tenth}")
    expect_close("posterior sd of ${site}" "${sd}" "${exact_sd}" "${tenth}")
  endforeach()

elseif(STEP STREQUAL "mismatched_plugins")
  # Plugins stamped as if built against the next ABI major of the SDK, or against the
  # next minor of LibTorch; the installed host must refuse each with the line
  # docs/plugins.md documents.
  file(READ "${PREFIX}/include/vguide/version.hpp" version_hpp)
  string(REGEX MATCH "#define VGUIDE_ABI_MAJOR ([0-9]+)u" _ "${version_hpp}")
  set(abi_major "${CMAKE_MATCH_1}")
  string(REGEX MATCH "#define VGUIDE_ABI_MINOR ([0-9]+)u" _ "${version_hpp}")
  set(abi_minor "${CMAKE_MATCH_1}")
  math(EXPR wrong_major "${abi_major} + 1")
  string(REGEX MATCH "^([0-9]+)\\.([0-9]+)" _ "${HOST_TORCH_VERSION}")
  math(EXPR next_minor "${CMAKE_MATCH_2} + 1")
  set(wrong_torch "${CMAKE_MATCH_1}.${next_minor}.0")

  file(REMOVE_RECURSE "${WORK}")
  build_against_install("${SOURCE_DIR}/tests/install/mismatched_plugin"
                        "-DWRONG_ABI_MAJOR=${wrong_major}" "-DWRONG_TORCH_VERSION=${wrong_torch}")
  set(plugin_abi "${WORK}/build/libwrong_abi.so")
  set(plugin_torch "${WORK}/build/libwrong_torch.so")
  set(expected_abi "vguide-host: error: plugin ${plugin_abi}: ABI version ${wrong_major}.${abi_minor} is incompatible with this host's ${abi_major}.${abi_minor} (major versions differ; rebuild the plugin against this SDK)\n")
  set(expected_torch "vguide-host: error: plugin ${plugin_torch}: built against LibTorch ${wrong_torch}, but this host uses ${HOST_TORCH_VERSION} (LibTorch's C++ ABI differs between minor versions)\n")
  foreach(kind abi torch)
    run(r "${host}" --plugin "${plugin_${kind}}" --list-plugins)
    if(NOT r_rc EQUAL 3 OR NOT r_err STREQUAL "${expected_${kind}}" OR NOT r_out STREQUAL "")
      message(FATAL_ERROR "${plugin_${kind}}: expected exit 3 and\n${expected_${kind}}got exit ${r_rc} and\n${r_err}${r_out}")
    endif()
  endforeach()

else()
  message(FATAL_ERROR "install_test.cmake: unknown STEP '${STEP}'")
endif()
