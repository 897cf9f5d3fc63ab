# `vtok batch` (tests/batch/test_batch.py): WebDataset tars, folders, lists
# and pipe: inputs built here from PIL images; rows equal to `vtok encode` /
# `vtok run` / `vtok tokenize`, keys in order, corrupt images recorded; ranks
# by flag and by Slurm / Open MPI / PMI / Kubernetes variables cover every
# sample exactly once; batch_resume kills a rank with SIGKILL mid-shard (and
# another with SIGTERM), reruns, and checks every sample appears exactly once
# with no temp files left; malformed and mutated tars (truncated, bad
# checksum, huge sizes, garbage) are recorded, never a crash. batch_mpi runs
# `mpirun -np 2 vtok batch` with rank 0 handing out shards (skipped, 77,
# without mpirun or a vtok built with MPI).
if(VTOK_PYTHON)
  foreach(part wds inputs recipe ids ranks resume malformed throughput mpi question)
    set(only ${part})
    if(part STREQUAL "resume")
      set(only kill)
    endif()
    add_test(NAME batch_${part}
             COMMAND ${VTOK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/batch/test_batch.py
                     --vtok $<TARGET_FILE:vtok> --work ${CMAKE_BINARY_DIR}/batch --only ${only}
                     --seed-dir ${CMAKE_BINARY_DIR}/recipes_gvt_seed
                     --build-dir ${CMAKE_BINARY_DIR})
    set_tests_properties(batch_${part} PROPERTIES LABELS e2e TIMEOUT 300 SKIP_RETURN_CODE 77)
  endforeach()
  # --output ids uses the tiny SEED that parity_recipes_gvt_seed writes
  set_tests_properties(batch_ids PROPERTIES DEPENDS parity_recipes_gvt_seed)
  # --prompt with SliME (ragged, --llm) and MoVA (--experts) on their parity fixtures
  set_tests_properties(batch_question PROPERTIES DEPENDS "parity_slime;parity_mova_recipe")
endif()
