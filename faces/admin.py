from django.contrib import admin

from .models import EngineCall, Face, Match


@admin.register(Face)
class FaceAdmin(admin.ModelAdmin):
    list_display = ("id", "photo", "index", "engine", "created_at")
    list_filter = ("engine",)
    raw_id_fields = ("photo", "event", "cluster")
    readonly_fields = ("engine_face_id",)


@admin.register(Match)
class MatchAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "photo", "distance", "rejected", "created_at")
    list_filter = ("rejected",)
    search_fields = ("user__username",)
    raw_id_fields = ("photo", "event", "user", "face")


@admin.register(EngineCall)
class EngineCallAdmin(admin.ModelAdmin):
    list_display = ("engine", "operation", "count", "updated_at")
    readonly_fields = ("engine", "operation", "count", "updated_at")
