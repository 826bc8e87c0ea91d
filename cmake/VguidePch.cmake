# One precompiled LibTorch header shared by every target (LibTorch headers cost
# ~10 s per translation unit otherwise). All targets use the same flags
# (PIC, hidden visibility, sanitizers), which is what REUSE_FROM requires.
add_library(vguide_pch OBJECT "${PROJECT_SOURCE_DIR}/cmake/pch_anchor.cpp")
target_link_libraries(vguide_pch PRIVATE torch)
target_compile_features(vguide_pch PRIVATE cxx_std_17)
if(VGUIDE_USE_PCH)
  target_precompile_headers(vguide_pch PRIVATE <torch/torch.h>)
endif()

function(vguide_use_pch target)
  if(VGUIDE_USE_PCH)
    target_precompile_headers(${target} REUSE_FROM vguide_pch)
  endif()
endfunction()
