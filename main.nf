#!/usr/bin/env nextflow
/*
 * pixer: particle picking for single-particle cryo-EM.
 * Thin entry point; the stages live in workflows/. Each process calls a bin/pixer-<command>
 * entry point, which is a shim onto the pixer Python package.
 *
 *   nextflow run main.nf --outdir results            # simulate, train, pick, evaluate (demo)
 */
nextflow.enable.dsl = 2

include { DEMO } from './workflows/demo'

workflow {
    DEMO()
}
