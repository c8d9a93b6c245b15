/*
 * PICK: each dataset's micrographs with its model (joined by dataset, never by arrival order).
 */
include { PIXER_PICK } from './modules/pixer_pick'

workflow PICK {
    take:
    picking   // [meta, micrographs]
    models    // [meta, model folder]

    main:
    PIXER_PICK(picking.join(models, failOnMismatch: true))

    emit:
    picks = PIXER_PICK.out.picks           // [meta, picks folder]
    particles = PIXER_PICK.out.particles   // [meta, particles.star of the picks]
}
