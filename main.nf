#!/usr/bin/env nextflow
/*
 * pixer: particle picking for single-particle cryo-EM (after PIXER, Zhang et al. 2019).
 * Thin entry point: the stages are composed in workflows/, each process is one file in
 * workflows/modules/ and calls a bin/pixer-<command> entry point. Parameters, profiles and
 * outputs: docs/pipeline.md.
 *
 *   nextflow run main.nf -profile test                                  # simulated data, CPU
 *   nextflow run main.nf -profile slurm,apptainer,gpu --input datasets.csv --outdir results -resume
 *   nextflow run main.nf -profile slurm,apptainer,gpu --benchmark empiar.csv --model model -resume
 */
nextflow.enable.dsl = 2

include { PIXER } from './workflows/pixer'
include { BENCHMARK } from './workflows/benchmark'

workflow {
    if (params.benchmark) {
        BENCHMARK(params.benchmark)
    } else {
        PIXER()
    }
}
